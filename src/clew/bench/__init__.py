"""Performance scenarios behind ``clew bench``: each measures clew beside the kernel's (or a
peer's) own time for the same work in the same run, and reports ratios, not verdicts."""
