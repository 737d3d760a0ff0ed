-- Runs once, when the mysql container initialises its data directory: the progress page
-- (WEB_DATABASE_URL) reads the tracker's tables and views through a user that cannot write them.
CREATE USER IF NOT EXISTS 'cofi_web'@'%' IDENTIFIED BY 'cofi_web';
GRANT SELECT ON cofi.* TO 'cofi_web'@'%';
