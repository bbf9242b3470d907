"""What every fault test checks in the database afterwards: nothing acknowledged lost, nothing doubled."""

from django.db import connection

from tests.reliability.annotators import Tally


def assert_database_matches(batch_id: int, tally: Tally) -> None:
    """Every acknowledged annotation is stored once with the id the client got; no comparison past its overlap."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.annotator_id, a.idempotency_key, a.id FROM batches_annotation a "
            "JOIN batches_comparison c ON c.id = a.comparison_id WHERE c.batch_id = %s",
            [batch_id],
        )
        rows = cursor.fetchall()
        cursor.execute(
            "SELECT count(*) FROM batches_comparison c JOIN batches_batch b ON b.id = c.batch_id "
            "WHERE c.batch_id = %s AND (SELECT count(*) FROM batches_annotation a "
            "WHERE a.comparison_id = c.id AND a.skip_reason = '') > b.overlap",
            [batch_id],
        )
        (past_overlap,) = cursor.fetchone()
        cursor.execute(
            "SELECT count(*) FROM batches_comparison c WHERE c.batch_id = %s AND c.annotation_count <> "
            "(SELECT count(*) FROM batches_annotation a WHERE a.comparison_id = c.id AND a.skip_reason = '')",
            [batch_id],
        )
        (out_of_step,) = cursor.fetchone()
    stored = {(annotator, key): pk for annotator, key, pk in rows}
    assert len(stored) == len(rows), "two annotations share an annotator and idempotency key"
    lost = sorted(key for key, pk in tally.acknowledged.items() if stored.get(key) != pk)
    assert not lost, f"{len(lost)} acknowledged annotations missing or different, e.g. {lost[:3]}"
    unacknowledged = sorted(set(stored) - set(tally.acknowledged))
    assert not unacknowledged, f"{len(unacknowledged)} annotations stored that no client was told about"
    assert past_overlap == 0, f"{past_overlap} comparisons annotated beyond their overlap"
    assert out_of_step == 0, f"{out_of_step} comparisons whose annotation_count disagrees with their annotations"
