from rest_framework.routers import SimpleRouter

from publications.api.views import DatasetViewSet, PublicationViewSet, StateObjectViewSet

router = SimpleRouter()
router.register("publications", PublicationViewSet, basename="publication")
router.register("datasets", DatasetViewSet, basename="dataset")
router.register("objects", StateObjectViewSet, basename="object")

urlpatterns = router.urls
