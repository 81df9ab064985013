from flask import Blueprint, render_template

blueprint = Blueprint("dashboard", __name__)


@blueprint.get("/")
def index():
    return render_template("staff/dashboard.html")
