"""From official downloads to a data root: ``prepare`` (annotation formats -> manifests) and
``check`` (data root health report).

One module per dataset family reads its publisher's annotation files and registers a
:class:`~eval_encoder.prepare.base.Format` (:mod:`eval_encoder.prepare.registry`);
:mod:`~eval_encoder.prepare.write` writes manifests, ``classes.csv`` and the report of absent
videos; :mod:`~eval_encoder.prepare.check` opens every clip and reports what a run would hit.
"""
