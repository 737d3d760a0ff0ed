#!/bin/bash
# Stands in for the official image's healthcheck.sh (--connect --innodb_initialized): healthy
# once the entrypoint has started the final server (not the initialising one) and it answers.
[[ -f /run/mysqld/ready ]] && mariadb-admin --protocol=socket --socket=/run/mysqld/mysqld.sock ping >/dev/null 2>&1
