"""Read-only reports for the admin console: the list (:mod:`~digest.reports.people`), its
health over time (:mod:`~digest.reports.health`) and the charts drawn from it
(:mod:`~digest.reports.charts`). They only read: every function takes an open session and
returns plain values, so the web layer (and a CLI, later) can show them."""
