SECRET_KEY = "fastserve-tests-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["django.contrib.contenttypes"]
ROOT_URLCONF = "plaindjango.urls"
DATABASES = {}
USE_TZ = True
