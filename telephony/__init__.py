"""SIP agent: pjsua2 worker processes behind kamailio. Never imports hotline_api; it reports
through the plain events in telephony.events to an EventSink supplied by the composition root."""
