from ._database import FORMAT_VERSION, Database, ExhibitRecord, NewExhibit
from ._store import FeatureStore, RecordRef
from ._vectors import VectorIndex
