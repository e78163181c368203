"""All ORM models; importing this package registers every table on Base.metadata."""
from hotline_api.db.base import Base
from hotline_api.models.calls import Call, DtmfEvent, Recording
import hotline_api.models.governance  # noqa: F401,E402
import hotline_api.models.cases  # noqa: F401,E402
import hotline_api.models.asr  # noqa: F401,E402
import hotline_api.models.operators  # noqa: F401,E402
import hotline_api.models.stats  # noqa: F401,E402
import hotline_api.models.callbacks  # noqa: F401,E402
import hotline_api.db.content_keys  # noqa: F401,E402 - the content_keys table
import hotline_api.models.content  # noqa: F401,E402 - seals report content per call

__all__ = ["Base", "Call", "DtmfEvent", "Recording"]
