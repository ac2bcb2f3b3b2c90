from ._database import FORMAT_VERSION, Database, ExhibitRecord, NewExhibit
from ._reviews import DISPOSITION_STATUSES, Disposition, Hit, Reviews
from ._store import FeatureStore, RecordRef
from ._vectors import VectorIndex
