from flask import Blueprint, render_template

blueprint = Blueprint("leads", __name__, url_prefix="/leads")


@blueprint.get("/")
def inbox():
    return render_template("staff/leads/inbox.html")
