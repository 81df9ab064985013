"""Staff lead pages: the inbox, its CSV export and bulk actions, and each lead's own page."""

from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_login import current_user
from werkzeug.exceptions import MethodNotAllowed

from app.leads import inbox as leads_inbox
from app.leads import workflow
from app.leads.models import REFERENCE
from app.staff.lead_forms import (
    AssignForm,
    BulkForm,
    EraseForm,
    InboxFilterForm,
    NoteForm,
    StatusForm,
)
from app.staff.permissions import admin_required
from app.types import utcnow

blueprint = Blueprint("leads", __name__, url_prefix="/leads")

# Pages beside the leads that only take a POST: a GET routes to show() and must still be a 405.
POST_ONLY_PAGES = {"bulk"}


@blueprint.context_processor
def helpers():
    return {"now": utcnow()}


@blueprint.errorhandler(404)
def lead_not_found(error):
    return render_template("staff/leads/not_found.html"), 404


def actor():
    return current_user._get_current_object()


@blueprint.get("/")
def inbox():
    form = InboxFilterForm(request.args)
    valid = form.validate()
    filters = form.to_filters()
    page = leads_inbox.inbox_page(filters, form.cursor.data)
    return render_template(
        "staff/leads/inbox.html",
        form=form,
        filters=filters,
        page=page,
        counts=leads_inbox.status_counts(filters),
        bulk_form=BulkForm(formdata=None, return_to=this_page(filters, form.cursor.data)),
    ), (200 if valid else 400)


def this_page(filters, cursor):
    position = {"cursor": cursor.encode()} if cursor else {}
    return url_for(".inbox", **filters.query_args(**position))


@blueprint.get("/export.csv")
def export():
    form = InboxFilterForm(request.args)
    if not form.validate():
        return inbox()
    chunks = leads_inbox.csv_chunks(form.to_filters())
    response = Response(stream_with_context(chunks), mimetype="text/csv")
    filename = f"leads-{utcnow():%Y-%m-%d}.csv"
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@blueprint.post("/bulk")
def bulk():
    form = BulkForm()
    back = inbox_url(form.return_to.data)
    if not form.validate():
        flash(form_message(form), "error")
        return redirect(back, code=303)
    result = workflow.bulk_set_status(form.lead.data, form.new_status, actor())
    flash(bulk_message(result, form.new_status), "success")
    return redirect(back, code=303)


def form_message(form):
    return next(error for field in form for error in field.errors)


def bulk_message(result, status):
    noun = "lead" if result.changed == 1 else "leads"
    parts = [f"{result.changed} {noun} set to {status.capitalize()}."]
    if result.unchanged:
        parts.append(f"{result.unchanged} already had that status.")
    if result.missing:
        parts.append(f"{result.missing} no longer exist.")
    return " ".join(parts)


def inbox_url(target):
    """Back to the inbox view the form was on (only a path of the inbox, nothing else)."""
    default = url_for(".inbox")
    if not target or not target.startswith(default) or "\\" in target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(ord(character) < 32 for character in target):
        return default
    return target


def lead_or_404(reference):
    lead = workflow.find_lead(reference) if REFERENCE.fullmatch(reference) else None
    if lead is None:
        abort(404)
    return lead


def lead_page(lead, code=200, **forms):
    """The lead's page; `forms` replaces a form with the one just sent, errors and all."""
    assign_form = forms.get("assign_form") or AssignForm(
        formdata=None, assignee=str(lead.assignee_id or "")
    )
    assign_form.set_choices(workflow.active_staff())
    return render_template(
        "staff/leads/lead.html",
        lead=lead,
        trail=workflow.trail(lead),
        status_form=forms.get("status_form") or StatusForm(formdata=None),
        assign_form=assign_form,
        note_form=forms.get("note_form") or NoteForm(formdata=None),
        erase_form=forms.get("erase_form") or EraseForm(formdata=None, reference=lead.reference),
    ), code


def to_lead(lead):
    """Back to the top of the lead's page, where the flash message says what happened."""
    return redirect(url_for(".show", reference=lead.reference), code=303)


@blueprint.get("/<reference>")
def show(reference):
    if reference in POST_ONLY_PAGES:
        raise MethodNotAllowed(valid_methods=["POST"])
    lead = lead_or_404(reference)
    if reference != lead.reference:
        return redirect(url_for(".show", reference=lead.reference), code=301)
    return lead_page(lead)


@blueprint.post("/<reference>/status")
def change_status(reference):
    lead = lead_or_404(reference)
    form = StatusForm()
    if not form.validate():
        return lead_page(lead, 400, status_form=form)
    if workflow.set_status(lead, form.status.data, actor()):
        flash(f"Status changed to {form.status.data.capitalize()}.", "success")
    else:
        flash(f"The lead was already {form.status.data.capitalize()}.", "info")
    return to_lead(lead)


@blueprint.post("/<reference>/assignee")
def change_assignee(reference):
    lead = lead_or_404(reference)
    form = AssignForm()
    form.set_choices(workflow.active_staff())
    if not form.validate():
        return lead_page(lead, 400, assign_form=form)
    if workflow.assign(lead, form.user_id, actor()):
        who = lead.assignee.display_name if lead.assignee else "nobody"
        flash(f"Lead assigned to {who}.", "success")
    return to_lead(lead)


@blueprint.post("/<reference>/notes")
def add_note(reference):
    lead = lead_or_404(reference)
    form = NoteForm()
    if not form.validate():
        return lead_page(lead, 400, note_form=form)
    workflow.add_note(lead, form.body.data, actor())
    flash("Note added.", "success")
    return to_lead(lead)


@blueprint.post("/<reference>/messages/<id:message_id>/resend")
def resend(reference, message_id):
    lead = lead_or_404(reference)
    message = workflow.message_of(lead, message_id)
    if message is None:
        abort(404)
    try:
        workflow.resend_message(lead, message, actor())
    except workflow.WorkflowError as error:
        flash(str(error), "error")
    else:
        flash(f"The email to {message.recipient} will be sent again now.", "success")
    return to_lead(lead)


@blueprint.post("/<reference>/erase")
@admin_required
def erase(reference):
    lead = lead_or_404(reference)
    form = EraseForm(reference=lead.reference)
    if not form.validate():
        return lead_page(lead, 400, erase_form=form)
    try:
        workflow.erase_lead(lead, actor())
    except workflow.WorkflowError as error:
        flash(str(error), "error")
        return to_lead(lead)
    flash(
        f"Lead {form.reference} has been erased with its notes and emails. "
        "The activity log keeps only that it was erased, by whom and when.",
        "success",
    )
    return redirect(url_for(".inbox"), code=303)
