"""The volume model's endpoints: ``/predict`` (the original API's bare integer) and
``/v1/volume/predict``."""
