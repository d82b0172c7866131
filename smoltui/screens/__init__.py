"""The dashboard's screens, one module per mode (home, model, train, runs) plus the help panel."""
