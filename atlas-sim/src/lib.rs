//! Atlas Administration API simulator.
