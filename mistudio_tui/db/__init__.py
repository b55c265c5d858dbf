"""Database: Peewee models over SQLite, migrations, and the queries the screens and CLI need."""
