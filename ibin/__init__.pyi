from . import correlate, data, features, index, report, synth
from ._alloc import keep_freed_memory
from .engine import (
    IngestReport,
    IngestResult,
    SearchParams,
    compare,
    ingest,
    load_prepared,
    open_database,
    prepare,
    record_disposition,
    search,
    search_exhibits,
)
from .errors import DatabaseError, DuplicateExhibitError, ExhibitNotFoundError, IbinError, ScanError
from .index import Database
from .leads import Lead, LeadList, LeadListLog
from .scan import Scan, load_scan, save_x3p

__version__: str
