from flask import Blueprint, abort, current_app, redirect, render_template, url_for
from sqlalchemy import select

from app.extensions import db, limiter
from app.leads import delivery, protection
from app.leads.forms import LIMITS, ContactForm
from app.leads.models import Lead
from app.leads.services import submit_lead

blueprint = Blueprint("leads", __name__)

STALE_FORM_MESSAGE = (
    "This form was open for a long time, so we could not be sure it came from you. "
    "Everything you typed is still here: please check it and send it again."
)


@blueprint.before_app_request
def start_delivery():
    delivery.start_in_process(current_app._get_current_object())


def contact_rate_limit():
    return current_app.config["CONTACT_RATE_LIMIT"]


@blueprint.get("/contact")
def contact():
    return render_template("leads/contact.html", form=fresh_form())


@blueprint.post("/contact")
@limiter.limit(contact_rate_limit, methods=["POST"])
def submit():
    protection.require_form_body()
    protection.refuse_cross_site_posts()
    form = ContactForm()
    age = protection.render_token_age(form.rendered_at.data)
    if not form.validate() or age is None:
        form.rendered_at.data = protection.new_render_token()
        notice = STALE_FORM_MESSAGE if age is None else None
        return render_template("leads/contact.html", form=form, notice=notice), 422
    lead = submit_lead(form, spam_reason=protection.spam_reason(form, age))
    return redirect(url_for("leads.thanks", reference=lead.reference), code=303)


@blueprint.get("/contact/thanks/<reference>")
def thanks(reference):
    lead = db.session.scalars(select(Lead).where(Lead.reference == reference)).first()
    if lead is None:
        abort(404)
    response = current_app.make_response(render_template("leads/thanks.html", lead=lead))
    response.cache_control.no_store = True
    response.cache_control.private = True
    return response


def fresh_form():
    form = ContactForm(formdata=None)
    form.rendered_at.data = protection.new_render_token()
    return form


@blueprint.app_context_processor
def contact_form_factory():
    """Pages that embed the "Let's connect" form call new_contact_form() to get one."""
    return {"new_contact_form": fresh_form, "limits": LIMITS}
