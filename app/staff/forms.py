from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, Length, Regexp

# PostgreSQL text cannot hold NUL, and no address or password contains a control character.
NO_CONTROL_CHARACTERS = Regexp(r"\A[^\x00-\x1f\x7f]*\Z")

# autocomplete="username", which password managers look for, is valid on a text input only
# (the autofill "Text" group, checked under WCAG 1.3.5); inputmode keeps the email keyboard.
EMAIL_AS_USERNAME = {"inputmode": "email", "autocapitalize": "none", "spellcheck": "false"}


class LoginForm(FlaskForm):
    email = StringField(
        "Email address",
        validators=[DataRequired(), Length(max=254), NO_CONTROL_CHARACTERS],
        render_kw=EMAIL_AS_USERNAME,
    )
    password = PasswordField(
        "Password", validators=[DataRequired(), Length(max=200), NO_CONTROL_CHARACTERS]
    )
    next = HiddenField()
