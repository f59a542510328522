"""Piano videos to demonstrations: keyboard frame, hands, notes, fingering (PianoMime 3.1, Appendix A)."""
