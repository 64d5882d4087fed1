"""The experiment notebooks and their profiles (data, not code): shipped in the wheel as `pstn.experiments`."""
