from django.http import FileResponse, HttpResponse
from django.urls import path


def hello(request):
    return HttpResponse("plain django")


def file(request):
    """The file named by ?path= (tests only), as a download."""
    return FileResponse(open(request.GET["path"], "rb"), as_attachment=True)


urlpatterns = [path("", hello), path("file", file)]
