from django.apps import AppConfig


class FastserveConfig(AppConfig):
    name = "fastserve.django"
    label = "fastserve"  # the default label, "django", would read as Django itself
    verbose_name = "fastserve"
