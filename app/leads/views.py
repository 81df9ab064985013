from flask import (
    Blueprint,
    abort,
    current_app,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)

from app.dates import wait_in_words
from app.leads import protection
from app.leads.forms import LIMITS, ContactForm, consent_label
from app.leads.services import LeadNotSaved, lead_by_reference, submit_lead
from app.logs import annotate

blueprint = Blueprint("leads", __name__)

UNCONFIRMED_FORM_MESSAGE = (
    "We could not confirm that this form came from our website, so your message has not "
    "been sent yet. Everything you typed is still here: please check it and press Send again."
)


@blueprint.get("/contact")
def contact():
    return render_template("leads/contact.html", form=fresh_form())


@blueprint.get("/contact/form-token")
def form_token():
    """A token of the reader's own, dated now: the page's script takes it when the form comes
    into view, so on a page from a cache the spam check counts from then, not from when the
    cached copy was made. It cannot be dated back, so it cannot help a bot past that check."""
    response = jsonify(token=protection.new_render_token())
    response.cache_control.no_store = True
    return response


@blueprint.post("/contact")
def submit():
    protection.require_form_body()
    protection.refuse_cross_site_posts()
    # Only the form's own fields: a file sent in place of a text field is a missing value.
    form = ContactForm(formdata=request.form)
    # Far above what correcting mistakes takes: a flood of broken posts, each a render.
    wait = protection.seconds_until_allowed("CONTACT_ATTEMPT_RATE_LIMIT", protection.ATTEMPTS_SCOPE)
    if wait is not None:
        return show_again_later(form, wait)
    token = protection.read_render_token(form.rendered_at.data)
    if not form.validate() or token is None:
        return show_again(form, unconfirmed=token is None)
    # A double click, or the same message sent again: the thanks page of the lead it made.
    if not protection.claim_message(form) and (earlier := protection.earlier_reference(form)):
        return redirect_to_thanks(earlier)
    # Only a message that would be stored counts: correcting a mistake, or pressing Send
    # twice, costs nothing.
    wait = protection.seconds_until_allowed()
    if wait is not None:
        protection.release_message(form)
        return show_again_later(form, wait)
    return store(form, token)


def store(form, token):
    try:
        reference = submit_lead(form, spam_reason=protection.spam_reason(form, token))
    except LeadNotSaved:
        protection.release_message(form)
        return show_again(form, notice=not_saved_message(), status=503)
    except Exception:
        protection.release_message(form)
        raise
    protection.record_reference(form, reference)
    return redirect_to_thanks(reference)


def redirect_to_thanks(reference):
    annotate(lead=reference)
    return redirect(url_for("leads.thanks", reference=reference), code=303)


def show_again_later(form, seconds):
    response = show_again(form, notice=wait_message(seconds), status=429)
    response.retry_after = seconds
    return response


def wait_message(seconds):
    return (
        "You have sent us several messages in a short time, so this one has not been sent. "
        f"Everything you typed is still here: please wait {wait_in_words(seconds)} and send "
        "it again."
    )


def not_saved_message():
    return (
        "We could not save your message just now, so it has not been sent. Everything you "
        "typed is still here: please try again in a few minutes, or email us at "
        f"{current_app.config['SITE_EMAIL']}."
    )


def show_again(form, unconfirmed=False, notice=None, status=422):
    """The form again with everything typed; it holds personal data, so no cache keeps it."""
    # A valid render time is kept: correcting a mistake and sending at once is not a bot.
    if unconfirmed:
        form.rendered_at.data = protection.token_for_a_form_typed_already()
        notice = notice or UNCONFIRMED_FORM_MESSAGE
    # Without JavaScript the next try comes from /contact: keep the page of the first.
    form.source_page.data = form.source_page.data or request.referrer
    html = render_template("leads/contact.html", form=form, notice=notice)
    response = make_response(html, status)
    response.cache_control.no_store = True
    return response


@blueprint.get("/contact/thanks/<reference>")
def thanks(reference):
    lead = lead_by_reference(reference)
    if lead is None:
        abort(404)
    response = current_app.make_response(render_template("leads/thanks.html", lead=lead))
    response.cache_control.no_store = True
    response.cache_control.private = True
    return response


def fresh_form():
    form = ContactForm(formdata=None)
    form.rendered_at.data = protection.new_render_token()
    form.fresh = True
    return form


@blueprint.app_context_processor
def contact_form_factory():
    """Pages that embed the "Let's connect" form call new_contact_form() to get one."""
    return {"new_contact_form": fresh_form, "limits": LIMITS, "consent_label": consent_label}
