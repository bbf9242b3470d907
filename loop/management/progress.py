"""The iteration commands' progress bar (`start_iteration`, `demo_loop`)."""

from backend.progress import progress_bar
from loop.models import Iteration
from loop.selectors import iteration_by_id, iteration_progress
from loop.services.iterations import iteration_run


def iteration_run_shown(*, iteration: Iteration) -> Iteration:
    """Run the iteration's remaining steps here and now, with its progress (0-100%) and stage on a bar."""
    with progress_bar(f"iteration {iteration.pk}", unit="%", total=100) as bar:

        def progress(stage: str, step: int, total: int) -> None:
            bar.note(f"{stage} {step}/{total}")
            bar.show(round(100 * iteration_progress(iteration=iteration_by_id(iteration_id=iteration.pk))))

        finished = iteration_run(iteration_id=iteration.pk, on_progress=progress)
        if finished.status == Iteration.Status.DONE:
            bar.show(100)
    return finished
