"""The served application: engine, dashboards' state, camera runner, access control."""
