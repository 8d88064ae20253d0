from django.db import migrations, models


def key_in_byte_order(apps, schema_editor):
    """Order keys (and the (dataset, key) index) by bytes, as S3 lists them; SQLite already does."""
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            'ALTER TABLE publications_stateobject ALTER COLUMN key TYPE varchar(1024) COLLATE "C"'
        )


def key_in_default_order(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            'ALTER TABLE publications_stateobject ALTER COLUMN key TYPE varchar(1024) COLLATE "default"'
        )


class Migration(migrations.Migration):
    dependencies = [
        ("publications", "0002_state_objects_related_name"),
    ]

    operations = [
        migrations.AlterField(
            model_name="stateobject",
            name="dataset",
            field=models.ForeignKey(
                db_index=False,
                on_delete=models.deletion.CASCADE,
                related_name="state_objects",
                to="publications.dataset",
            ),
        ),
        migrations.RunPython(key_in_byte_order, key_in_default_order),
    ]
