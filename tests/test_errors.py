import sqlalchemy as sa

from app.extensions import db
from app.posts.models import Post


def test_server_error_is_styled_and_rolls_back(make_app):
    app = make_app(TESTING=False)

    @app.get("/boom")
    def boom():
        db.session.add(
            Post(slug="half-done", title="x", standfirst="x", body_markdown="", body_html="")
        )
        db.session.flush()
        raise RuntimeError("kaput")

    with app.app_context():
        response = app.test_client().get("/boom")
        assert response.status_code == 500
        assert "Something went wrong on our side" in response.text
        assert "kaput" not in response.text
        assert db.session.scalar(sa.select(sa.func.count(Post.id))) == 0


def test_method_not_allowed_is_styled(client):
    response = client.post("/posts/")
    assert response.status_code == 405
    assert "Method Not Allowed" in response.text
    assert 'class="site-footer"' in response.text
