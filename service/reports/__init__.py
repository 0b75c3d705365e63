"""Reports: read-only figures over what the other features record (their tables read, never written), as
JSON or, with `Accept: text/csv`, as CSV (`service.reports.csv`: the convention every report follows)."""
