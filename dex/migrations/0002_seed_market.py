"""Seed the token registry, the pools of both venues and the pairs' external prices."""

from django.db import migrations


def seed(apps, schema_editor):
    # The seed table is plain data (dex/seed.py), shared with pools_reset_to_seed().
    from dex.seed import seed_market

    seed_market(apps.get_model("dex", "Token"), apps.get_model("dex", "Pool"), apps.get_model("dex", "PairPrice"))


def unseed(apps, schema_editor):
    from dex.seed import SEED_TOKENS

    Token = apps.get_model("dex", "Token")
    Pool = apps.get_model("dex", "Pool")
    PairPrice = apps.get_model("dex", "PairPrice")
    symbols = [row[0] for row in SEED_TOKENS]
    Pool.objects.filter(token_a__symbol__in=symbols).delete()
    PairPrice.objects.filter(token_a__symbol__in=symbols).delete()
    Token.objects.filter(symbol__in=symbols).delete()


class Migration(migrations.Migration):
    dependencies = [("dex", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]
