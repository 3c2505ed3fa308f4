-- The deployment that answered a stored response, when that deployment speaks the Responses API
-- itself: a continuation (`previous_response_id`) goes back to it while it is there (affinity).
ALTER TABLE stored_responses ADD COLUMN deployment LONGTEXT;
