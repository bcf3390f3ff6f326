"""Plumbing the four lessons in ``scripts/`` share, kept out of them so they read as lessons.

A lesson imports ``from wideann import course`` and calls what is below; each file holds one job:

- :mod:`~wideann.course.errors` -- :func:`run`: runs a lesson's ``main()``; a user's mistake (wrong option,
  bad or missing data, a full disk) ends as one line on stderr and exit code 2 (options) or 1 (data,
  files), not a traceback (:class:`LessonError`, :class:`UsageError`, :func:`user_error`).
- :mod:`~wideann.course.options` -- :func:`parser`: the command-line options every lesson has (each
  lesson adds its own), with range checks (:func:`positive_int`, :func:`non_negative_int`,
  :func:`positive_float`, :func:`non_negative_float`, :func:`probability`), ``--quiet`` included (no
  progress bars; the bars themselves are :mod:`wideann.progress`); :func:`mixed_precision`.
- :mod:`~wideann.course.tracking` -- :func:`add_tracking_options`, :func:`tracker_config`,
  :func:`tracker_kwargs`: ``--log-with`` / ``--log-every`` for accelerate's experiment trackers (a tracker
  that is unknown or not installed is a one-line usage error, exit code 2), and what
  ``accelerator.init_trackers`` is given.
- :mod:`~wideann.course.tables` -- :func:`prepare_data`: finds the table to train on. With no ``--data``
  it takes the shipped example CSV (``data/example.csv``) and normalizes it with the C++ engine into the
  run folder, printing the ``wideann normalize`` command it ran; CSV files given with ``--data`` /
  ``--test-data`` are handled the same way; ``.npy`` tables (one file, several shards or a folder of
  them) are used as they are, with their stats file (beside them, or ``--stats``), after checking that
  the shards agree; first of all, the run folder, and the files the run replaces at its end
  (:func:`~wideann.course.results.refuse_a_run_folder_that_may_not_be_written`: one that may not be written is
  refused before any work); :func:`check_finite`: the validation and test rows read once before training, to refuse
  a nan or inf naming its file, row and column; :func:`shell_path`: a file name as the lessons' lines show it.
- :mod:`~wideann.course.results` -- :func:`clear_results`: as a new run starts training, the results and
  TensorBoard curves an earlier run left in the folder go; :func:`write_metrics`: ``metrics.json`` in the run
  folder, and the same numbers printed; :func:`write_predictions`: test predictions back in original units
  through the C++ denormalizer; :func:`save_model`: the model's weights, and beside them ``model.json`` and
  ``stats.json`` for ``wideann predict`` (see :mod:`wideann.modelcard`).
- :mod:`~wideann.course.checkpoints` -- :class:`Checkpoints`: complete-or-absent checkpoints for
  ``--resume``, loaded weights-only, that refuse a resume with other options.
- :mod:`~wideann.course.runlock` -- :func:`~wideann.course.runlock.hold_the_run_folder`: one run at a time in a
  run folder (called by :func:`prepare_data`; a second run there is refused in one line before any work).
- :mod:`~wideann.course.processes` -- what several processes do together: each learns whether any of
  them failed, so that the main process can say why, and the test hook that stops a run where a kill
  matters most.

File names in what a lesson prints follow one rule: a line that says what the run does or made (``-> X``,
``resumed from X``, the ``wideann normalize`` command it ran) shows each as :func:`shell_path` does, quoted for
bash (a name with a newline or a byte that is not UTF-8 as ``$'...'``), so that it can be copied into a command;
an error or warning line on stderr shows it as the command line does, with :func:`~wideann.course.errors.shown`
(``\\xNN``, unquoted), but for a path it gives to type (``--stats PATH``), quoted by :func:`shell_path` for stderr's
encoding (``stream=sys.stderr``).
"""
from .checkpoints import CHECKPOINT_INFO, RESUME_FREE_OPTIONS, Checkpoints, check_weights_only, latest_checkpoint
from .errors import LessonError, UsageError, run, user_error
from .options import (mixed_precision, non_negative_float, non_negative_int, parser, positive_float, positive_int,
                      probability)
from .results import clear_results, save_model, write_metrics, write_predictions
from .tables import EXAMPLE_NAME, check_finite, example_csv, prepare_data, shell_path
from .tracking import TRACKER_PACKAGES, add_tracking_options, tracker_config, tracker_kwargs

__all__ = ["CHECKPOINT_INFO", "EXAMPLE_NAME", "RESUME_FREE_OPTIONS", "TRACKER_PACKAGES", "Checkpoints", "LessonError",
           "UsageError", "add_tracking_options", "check_finite", "check_weights_only", "clear_results", "example_csv",
           "latest_checkpoint",
           "mixed_precision", "non_negative_float", "non_negative_int", "parser", "positive_float", "positive_int",
           "prepare_data", "probability", "run", "save_model", "shell_path", "tracker_config", "tracker_kwargs",
           "user_error",
           "write_metrics", "write_predictions"]
