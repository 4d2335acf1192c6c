"""MOF releases: bundle a run (bundle), compute its Model Openness Framework class from the files (mof), audit
every licence (licences), render the cards (cards), and verify a release, optionally by re-running training
(verify)."""
