from datetime import datetime

from sqlalchemy import Column, ForeignKey, Index, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.posts.rendering import render_inline
from app.types import UTCDateTime, utcnow

WORDS_PER_MINUTE = 220

post_tags = Table(
    "post_tags",
    db.metadata,
    Column("post_id", ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class Tag(db.Model):
    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    name: Mapped[str] = mapped_column(String(80))

    def __repr__(self):
        return f"<Tag {self.slug}>"


class Post(db.Model):
    __tablename__ = "posts"
    __table_args__ = (Index("ix_posts_published_at", "published_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(200), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    standfirst: Mapped[str] = mapped_column(Text)
    body_markdown: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str] = mapped_column(Text)
    source_markdown: Mapped[str] = mapped_column(Text, default="")
    meta_description: Mapped[str] = mapped_column(String(300), default="")
    cover_image: Mapped[str | None] = mapped_column(String(300))
    cover_alt: Mapped[str] = mapped_column(String(300), default="")
    word_count: Mapped[int] = mapped_column(default=0)
    is_demo: Mapped[bool] = mapped_column(default=False)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # Set with updated_at by `flask content import`: a later updated_at is a web edit.
    imported_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    tags: Mapped[list[Tag]] = relationship(secondary=post_tags, order_by=Tag.name, lazy="selectin")

    @property
    def reading_minutes(self):
        return max(1, round(self.word_count / WORDS_PER_MINUTE))

    @property
    def source_html(self):
        return render_inline(self.source_markdown)

    @property
    def description(self):
        return self.meta_description or self.standfirst

    def __repr__(self):
        return f"<Post {self.slug}>"
