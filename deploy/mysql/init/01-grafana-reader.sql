-- Runs once, when the mysql container initialises its data directory: Grafana reads the
-- tracker's tables and views through a user that cannot write them.
CREATE USER IF NOT EXISTS 'grafana'@'%' IDENTIFIED BY 'grafana';
GRANT SELECT ON cofi.* TO 'grafana'@'%';
