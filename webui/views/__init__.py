"""The core pages: catalogue, methodology, dashboard, audit log, administration."""
