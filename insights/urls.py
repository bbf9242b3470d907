from django.urls import path

from insights import views

urlpatterns = [
    path("", views.index, name="dashboard-index"),
    path("batches/<int:batch_id>/", views.batch_page, name="dashboard-batch"),
    path("annotators/<int:annotator_id>/", views.annotator_page, name="dashboard-annotator"),
    path("annotators/<int:annotator_id>/score/", views.score_responses, name="dashboard-annotator-score"),
    path("models/", views.models_page, name="dashboard-models"),
    path("lineage/<str:kind>/<int:node_id>/", views.lineage_page, name="dashboard-lineage"),
]
