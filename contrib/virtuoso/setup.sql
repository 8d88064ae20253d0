-- Run once as dba: isql-vt 127.0.0.1:1111 dba PASSWORD < setup.sql (after editing the password).
-- A SPARQL user for dms-update: digest auth on /sparql-auth and /sparql-graph-crud-auth.
DB.DBA.USER_CREATE('dmsagent', 'CHANGE-ME');
GRANT SPARQL_SELECT TO "dmsagent";
GRANT SPARQL_UPDATE TO "dmsagent";
-- The Graph Store endpoint (/sparql-graph-crud-auth) runs updates as the SPARQL role as well.
GRANT SPARQL_UPDATE TO "SPARQL";
