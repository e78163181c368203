"""Covering indexes for the statistics dashboard (``web.queries.dashboard``).

No tables of their own: each index lets one of the dashboard's aggregations over a period read index
pages only (no lookup of the wide rows, which hold encrypted documents), so the 12-month view over
100k calls / 20k cases stays well under the 300 ms page goal. Created by migration ``0008_stats``.
"""
from __future__ import annotations

from sqlalchemy import Index

from hotline_api.models.calls import Call
from hotline_api.models.cases import Case, CaseFacet, Draft
from hotline_api.models.governance import ReviewAssignment

#: calls by status over a period (skip-scan over the few statuses, then a created_at range each)
ix_calls_status_created = Index("ix_calls_status_created", Call.status, Call.created_at)
#: cases received in a period: totals, real name, urgent, category/status per day, ids for the joins
ix_cases_stats = Index("ix_cases_stats", Case.received_on, Case.category, Case.status, Case.real_name,
                       Case.urgent, Case.draft_id, Case.id)
#: the duplicate-hint flag of a case's draft, found without reading the draft row
ix_drafts_duplicate = Index("ix_drafts_duplicate", Draft.duplicate_hint, Draft.id)
#: drafts received in a period, by status
ix_drafts_received = Index("ix_drafts_received", Draft.received_at, Draft.status)
#: issue types / places of a case
ix_case_facets_stats = Index("ix_case_facets_stats", CaseFacet.case_id, CaseFacet.facet, CaseFacet.value)
#: review compliance of the items assigned in a period
ix_review_assignments_stats = Index("ix_review_assignments_stats", ReviewAssignment.assigned_at,
                                    ReviewAssignment.manager_id, ReviewAssignment.completed_at,
                                    ReviewAssignment.due_at)

INDEXES = (ix_calls_status_created, ix_cases_stats, ix_drafts_duplicate, ix_drafts_received, ix_case_facets_stats,
           ix_review_assignments_stats)
