"""The trajbench store: format constants, the Recorder, the reader and the validator."""
