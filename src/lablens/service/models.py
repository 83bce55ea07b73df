"""Database tables (SQLAlchemy 2.0). The schema itself is created by the Alembic migrations, never by ``create_all``."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

ROLES = ("technician", "reviewer", "admin")  # each role may do what the ones before it may


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    token_sha256: Mapped[str | None] = mapped_column(
        String(64), unique=True, index=True, nullable=True
    )  # None: revoked
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    active: Mapped[bool] = mapped_column(Boolean, default=True)  # False: the account cannot sign in


class Sample(Base):
    __tablename__ = "samples"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="open")  # open | signed
    bundle_hash: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    signed_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    signed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    call: Mapped[str | None] = mapped_column(
        Text, nullable=True
    )  # JSON {method, predicted, probabilities}: a multiple-instance bundle's call on the whole sample
    task: Mapped[str] = mapped_column(String(50), default="*")  # the registry task whose model classified it
    ood: Mapped[str | None] = mapped_column(
        Text, nullable=True
    )  # JSON: the OOD guard's verdict on the sample
    cells: Mapped[list[Cell]] = relationship(back_populates="sample", order_by="Cell.id")


class Cell(Base):
    __tablename__ = "cells"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id"), index=True)
    original_name: Mapped[str] = mapped_column(String(255))
    image_sha256: Mapped[str] = mapped_column(String(64))
    predicted: Mapped[str] = mapped_column(String(100))
    confidence: Mapped[float] = mapped_column(Float)
    probabilities: Mapped[str] = mapped_column(Text)  # JSON {class: p}
    label: Mapped[str | None] = mapped_column(String(100), nullable=True)  # the technician's call
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending | confirmed | reclassified
    flags: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of quality flags
    source: Mapped[str | None] = mapped_column(
        Text, nullable=True
    )  # JSON {field, box} for cells found on fields
    attention: Mapped[float | None] = mapped_column(
        Float, nullable=True
    )  # share of the sample call this cell drove (multiple-instance bundles; sums to 1 over the sample)
    bundle_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the model that classified it
    gate: Mapped[str] = mapped_column(
        String(30), default="classified"
    )  # classified | not_evaluable (quality gate) | out_of_distribution (OOD guard)
    quality_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    ood_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    sample: Mapped[Sample] = relationship(back_populates="cells")


class Model(Base):
    """A bundle registered for a task: versions count up per task; one is active (serves new samples)."""

    __tablename__ = "models"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task: Mapped[str] = mapped_column(String(50), index=True)
    version: Mapped[int] = mapped_column(Integer)
    bundle_hash: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    registered_by: Mapped[str] = mapped_column(String(100))
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    promotion: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON: the report that promoted it


class AuditEvent(Base):
    """Append-only (database triggers refuse UPDATE and DELETE) and chained: ``hash = HMAC-SHA256(key, prev_hash +
    canonical JSON of this row's content)`` with a key kept outside the database (``scheme`` ``hmac-sha256``; rows
    written before keys existed are ``sha256``, unkeyed)."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[str] = mapped_column(String(40))  # ISO 8601 UTC, stored as text so the hash is exact
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(50))
    entity: Mapped[str] = mapped_column(String(50))
    entity_id: Mapped[int] = mapped_column(Integer)
    before: Mapped[str] = mapped_column(Text)  # JSON
    after: Mapped[str] = mapped_column(Text)  # JSON
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    scheme: Mapped[str] = mapped_column(String(20), default="hmac-sha256")
