from flask import Blueprint, render_template

blueprint = Blueprint("posts", __name__, url_prefix="/posts")


@blueprint.get("/")
def index():
    return render_template("staff/posts/index.html")
