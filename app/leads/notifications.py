"""The emails a new lead sends: one outbox row each, committed with the lead."""

from flask import current_app

from app.leads.models import OutboxMessage


def queue_notifications(lead):
    config = current_app.config
    for recipient in config["LEADS_NOTIFY_TO"] or [config["SITE_EMAIL"]]:
        lead.messages.append(OutboxMessage(kind="lead_notification", recipient=recipient))
    if config["LEADS_ACKNOWLEDGE"]:
        lead.messages.append(OutboxMessage(kind="lead_acknowledgment", recipient=lead.email))
