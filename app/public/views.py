from flask import Blueprint, render_template

from app.posts import queries

blueprint = Blueprint("public", __name__)

HOME_LATEST_POSTS = 3


@blueprint.get("/")
def home():
    return render_template("public/home.html", latest=queries.latest(HOME_LATEST_POSTS))


@blueprint.get("/about")
def about():
    return render_template("public/about.html")


@blueprint.get("/privacy")
def privacy():
    return render_template("public/privacy.html")


@blueprint.get("/robots.txt")
def robots():
    return render_template("public/robots.txt"), {"Content-Type": "text/plain; charset=utf-8"}
