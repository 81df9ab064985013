"""Forms of the staff lead pages: the inbox filters (GET) and every action on a lead (POST)."""

from flask_wtf import FlaskForm
from wtforms import (
    DateField,
    Field,
    Form,
    HiddenField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import AnyOf, DataRequired, Length, Optional, ValidationError

from app.leads.inbox import Cursor, Filters, InvalidCursor
from app.leads.models import LEAD_STATUSES
from app.routing import is_id
from app.validation import drop_control_characters, single_line, strip, unix_newlines

STATUS_CHOICES = [SelectChoice(status, status.capitalize()) for status in LEAD_STATUSES]
MAX_SEARCH = 200
MAX_SOURCE = 500
MAX_NOTE = 5000
MAX_BULK = 500


class IsoDateField(DateField):
    """A date typed as YYYY-MM-DD (what <input type="date"> sends), with a clear error."""

    def __init__(self, label, **kwargs):
        super().__init__(label, format="%Y-%m-%d", **kwargs)

    def process_formdata(self, valuelist):
        try:
            super().process_formdata(valuelist)
        except ValueError as error:
            raise ValueError(
                f"{self.label.text}: enter a date as year-month-day, such as 2024-05-31."
            ) from error


class CursorField(StringField):
    """The opaque position of a page of the inbox."""

    def process_formdata(self, valuelist):
        self.data = None
        if valuelist and valuelist[0]:
            try:
                self.data = Cursor.decode(valuelist[0][:100])
            except InvalidCursor as error:
                raise ValueError(
                    "That page link is damaged or out of date. The newest leads are shown below."
                ) from error


class InboxFilterForm(Form):
    """Read from the query string, so a filtered view is a URL that can be shared."""

    status = SelectField(
        "Status",
        id="filter-status",
        default="",
        choices=[SelectChoice("", "Any status"), *STATUS_CHOICES],
        validate_choice=False,
        validators=[AnyOf(["", *LEAD_STATUSES], message="Choose a status from the list.")],
    )
    received_from = IsoDateField(
        "Received from", name="from", id="filter-from", validators=[Optional()]
    )
    received_to = IsoDateField("Received to", name="to", id="filter-to", validators=[Optional()])
    source = StringField(
        "Source page",
        id="filter-source",
        filters=[strip],
        validators=[
            Length(max=MAX_SOURCE, message=f"Source page: at most {MAX_SOURCE} characters."),
            single_line(),
        ],
    )
    q = StringField(
        "Search",
        id="filter-q",
        filters=[strip],
        validators=[
            Length(max=MAX_SEARCH, message=f"Search: at most {MAX_SEARCH} characters."),
            single_line(),
        ],
    )
    cursor = CursorField()

    def validate_received_to(self, field):
        start = self.received_from.data
        if field.data and start and field.data < start:
            raise ValidationError("Received to: choose a date on or after the first one.")

    @property
    def messages(self):
        return [error for field in self for error in field.errors]

    def to_filters(self):
        """The filters that were read without a problem (all of them, after validate())."""
        return Filters(
            status=self.status.data if not self.status.errors else "",
            received_from=self.received_from.data if not self.received_from.errors else None,
            received_to=self.received_to.data if not self.received_to.errors else None,
            source=(self.source.data or "") if not self.source.errors else "",
            search=(self.q.data or "") if not self.q.errors else "",
        )


class IdListField(Field):
    """Lead ids from the inbox's checkboxes (a repeated form field)."""

    def process_formdata(self, valuelist):
        self.data = []
        if len(valuelist) > MAX_BULK:
            raise ValueError(f"Select at most {MAX_BULK} leads at a time.")
        for value in valuelist:
            if not (value.isascii() and value.isdigit() and is_id(value)):
                raise ValueError("The selection could not be read. Select the leads again.")
            self.data.append(int(value))
        self.data = sorted(set(self.data))


class BulkForm(FlaskForm):
    lead = IdListField("Leads", default=list)
    action = StringField(
        validators=[AnyOf(["status", "spam"], message="Choose what to do with the selection.")]
    )
    status = SelectField("Set status to", choices=STATUS_CHOICES, validate_choice=False)
    return_to = HiddenField()

    def validate_lead(self, field):
        if not field.data:
            raise ValidationError("Select at least one lead first.")

    def validate_status(self, field):
        if self.action.data == "status" and field.data not in LEAD_STATUSES:
            raise ValidationError("Choose a status from the list.")

    @property
    def new_status(self):
        return "spam" if self.action.data == "spam" else self.status.data


class StatusForm(FlaskForm):
    status = SelectField(
        "Status",
        choices=STATUS_CHOICES,
        validate_choice=False,
        validators=[AnyOf(LEAD_STATUSES, message="Choose a status from the pipeline.")],
    )


class AssignForm(FlaskForm):
    assignee = SelectField("Assigned to", coerce=str, validate_choice=False)

    def set_choices(self, users):
        self.assignee.choices = [
            SelectChoice("", "Nobody"),
            *(SelectChoice(str(user.id), user.display_name) for user in users),
        ]

    def validate_assignee(self, field):
        if field.data not in {choice.value for choice in field.choices}:
            raise ValidationError("Choose an active member of staff from the list.")

    @property
    def user_id(self):
        return int(self.assignee.data) if self.assignee.data else None


class NoteForm(FlaskForm):
    body = TextAreaField(
        "Add a note",
        # Unix line breaks, no control characters other than tab and line break, trimmed.
        filters=[unix_newlines, drop_control_characters, strip],
        validators=[
            DataRequired(message="Write the note before saving it."),
            Length(max=MAX_NOTE, message=f"A note can be at most {MAX_NOTE:,} characters."),
        ],
    )


class EraseForm(FlaskForm):
    confirm = StringField("Type the lead's reference to confirm", filters=[strip])

    def __init__(self, *args, reference, **kwargs):
        super().__init__(*args, **kwargs)
        self.reference = reference

    def validate_confirm(self, field):
        if (field.data or "").upper() != self.reference:
            raise ValidationError(
                f"Type the reference {self.reference} exactly to confirm the erasure."
            )
