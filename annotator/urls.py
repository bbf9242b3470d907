from django.contrib.auth import views as auth_views
from django.urls import path

from annotator import views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(template_name="annotator/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("work/batches/<int:batch_id>/", views.batch_work, name="batch-work"),
    path("work/assignments/<int:assignment_id>/", views.assignment_work, name="assignment-work"),
]
