from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, PasswordField
from wtforms.validators import DataRequired, Length, Regexp

# PostgreSQL text cannot hold NUL, and no address or password contains a control character.
NO_CONTROL_CHARACTERS = Regexp(r"\A[^\x00-\x1f\x7f]*\Z")


class LoginForm(FlaskForm):
    email = EmailField(
        "Email address", validators=[DataRequired(), Length(max=254), NO_CONTROL_CHARACTERS]
    )
    password = PasswordField(
        "Password", validators=[DataRequired(), Length(max=200), NO_CONTROL_CHARACTERS]
    )
    next = HiddenField()
