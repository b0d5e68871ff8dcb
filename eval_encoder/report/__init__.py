"""Run records -> leaderboard tables and plots, and paired comparisons of runs.

Modules, each importing only those above it in this list:

- ``names``: the paper's datasets, column titles, row keys, :class:`LeaderboardError`;
- ``records``: find, load, upgrade and check run records; place each in its row;
- ``cells``: the latest record per cell, seeds, scores, intervals, the measured table;
- ``reported``: the paper's numbers as shipped, and the check of their AVGs;
- ``board``: measured, reported and delta rows in one :class:`~.board.Board`, with notes;
- ``render``: a board as markdown, LaTeX or CSV; ``plots``: a board as figures (matplotlib);
- ``cli``: ``python -m eval_encoder leaderboard``;
- ``compare``: ``python -m eval_encoder compare``, two runs or rows clip by clip;
- ``classes``: per-class accuracy, confusions and moved classes from predictions files;
- ``classnames``: class names from a dataset's ``classes.csv``, else indices;
- ``figures``: the HTML report's SVG figures; ``runpage``: what a run's page shows;
  ``cellpage``: what the page of a cell of several seeds shows;
- ``html``: Jinja2 templates (``templates/``), a board as an HTML table;
- ``site``: ``python -m eval_encoder report``, the static HTML report.
"""
