from ._audit import AuditEntry, default_user
from ._check import CheckReport, Finding, check_database
from ._database import FORMAT_VERSION, Database, ExhibitRecord, NewExhibit, check_text, validate_metadata
from ._reviews import DISPOSITION_STATUSES, Disposition, Hit, Reviews
from ._store import FeatureStore, RecordRef
from ._vectors import VectorIndex
