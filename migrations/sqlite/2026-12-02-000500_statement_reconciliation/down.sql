DROP TABLE reconciliation_differences;
DROP TABLE reconciliation_runs;
DROP TABLE bill_files;
