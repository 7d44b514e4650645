"""chatserver: real-time messaging for an applicant tracking system."""
