"""The example Django API's WSGI entry point, instrumented by the trimtab agent.

Run it (from the repository root; three sync workers sharing config and journal)::

    TRIMTAB_TOKENS=alice:write:change-me TRIMTAB_STATE_DIR=/tmp/trimtab-django gunicorn -w 3 -b 127.0.0.1:8001 --chdir examples/django_app shop.wsgi:application

Then ``curl 127.0.0.1:8001/items/7``, ``curl 127.0.0.1:8001/metrics`` and
``curl -H 'authorization: Bearer change-me' 127.0.0.1:8001/_trimtab/config``. The agent's
part is the ``instrument`` call: routes are named by Django's resolver (``/items/<int:id>``).
"""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application
from trimtab.agent.django import instrument

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")

application = instrument(get_wsgi_application(),
                         instance=os.environ.get("TRIMTAB_INSTANCE", "django-api"))
