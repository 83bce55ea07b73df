"""The review service: FastAPI app, SQLAlchemy models (SQLite or PostgreSQL), Alembic migrations, audit chain."""
