-- The two hot transitions of the chat step machine as functions, so each is one
-- round trip: starting a request (and claiming its first LLM call), and recording
-- an LLM call's answer. Each checks the phase it expects under a row lock.

CREATE OR REPLACE FUNCTION chat_begin(
    p_conversation text, p_request text, p_content jsonb, p_provider text, p_model text,
    p_max_tokens integer, p_system text, p_stream boolean
) RETURNS TABLE (o_outcome text, o_busy_with text, o_turn integer, o_system text)
LANGUAGE plpgsql AS $$
DECLARE
    v_turn integer;
    v_phase text;
    v_active text;
    v_system text := p_system;
BEGIN
    IF EXISTS (SELECT 1 FROM chat_requests r WHERE r.id = p_request) THEN
        RETURN QUERY SELECT 'existing'::text, NULL::text, NULL::integer, NULL::text;
        RETURN;
    END IF;
    INSERT INTO chat_conversations (id) VALUES (p_conversation) ON CONFLICT (id) DO NOTHING;
    SELECT c.turn, c.phase, c.active_request INTO v_turn, v_phase, v_active
      FROM chat_conversations c WHERE c.id = p_conversation FOR UPDATE;
    IF v_phase <> 'idle' THEN
        RETURN QUERY SELECT 'busy'::text, v_active, v_turn, NULL::text;
        RETURN;
    END IF;
    IF v_system IS NULL THEN  -- a follow-up keeps the conversation's system prompt
        SELECT r.system INTO v_system FROM chat_requests r
         WHERE r.conversation_id = p_conversation ORDER BY r.first_turn DESC LIMIT 1;
    END IF;
    INSERT INTO chat_requests (id, conversation_id, provider, model, max_tokens, system, stream, first_turn)
    VALUES (p_request, p_conversation, p_provider, p_model, p_max_tokens, v_system, p_stream, v_turn);
    INSERT INTO chat_messages (conversation_id, seq, request_id, role, content)
    SELECT p_conversation, coalesce(max(m.seq), 0) + 1, p_request, 'user', p_content
      FROM chat_messages m WHERE m.conversation_id = p_conversation;
    UPDATE chat_conversations c
       SET phase = 'llm', active_request = p_request, claimed_at = now(), updated_at = now()
     WHERE c.id = p_conversation;
    RETURN QUERY SELECT 'new'::text, NULL::text, v_turn, v_system;
END
$$;

CREATE OR REPLACE FUNCTION chat_record_turn(
    p_conversation text, p_request text, p_turn integer, p_provider text, p_model text,
    p_input integer, p_output integer, p_cache_read integer, p_cache_write integer,
    p_cost numeric, p_duration_ms double precision, p_stop_reason text, p_from_cache boolean,
    p_content jsonb, p_tool_calls jsonb, p_answer text
) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_tools boolean := jsonb_array_length(p_tool_calls) > 0;
    v_rows integer;
BEGIN
    UPDATE chat_conversations c
       SET phase = CASE WHEN v_tools THEN 'tools' ELSE 'idle' END,
           turn = CASE WHEN v_tools THEN p_turn ELSE p_turn + 1 END,
           active_request = CASE WHEN v_tools THEN c.active_request ELSE NULL END,
           claimed_at = NULL,
           updated_at = now()
     WHERE c.id = p_conversation AND c.active_request = p_request AND c.turn = p_turn AND c.phase = 'llm';
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    IF v_rows = 0 THEN
        RETURN false;  -- not due: another replica recorded this step first
    END IF;
    INSERT INTO chat_llm_calls (conversation_id, turn, request_id, provider, model, input_tokens,
        output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, duration_ms, stop_reason, from_cache)
    VALUES (p_conversation, p_turn, p_request, p_provider, p_model, p_input, p_output, p_cache_read,
        p_cache_write, p_cost, p_duration_ms, p_stop_reason, p_from_cache);
    INSERT INTO chat_messages (conversation_id, seq, request_id, role, content, turn)
    SELECT p_conversation, coalesce(max(m.seq), 0) + 1, p_request, 'assistant', p_content, p_turn
      FROM chat_messages m WHERE m.conversation_id = p_conversation;
    INSERT INTO chat_tool_calls (conversation_id, id, request_id, turn, position, name, arguments)
    SELECT p_conversation, call->>'id', p_request, p_turn, (ordinal - 1)::integer, call->>'name', call->'input'
      FROM jsonb_array_elements(p_tool_calls) WITH ORDINALITY AS calls(call, ordinal);
    IF NOT v_tools THEN
        UPDATE chat_requests r
           SET status = 'completed', answer = p_answer, stop_reason = p_stop_reason, finished_at = now()
         WHERE r.id = p_request;
    END IF;
    RETURN true;
END
$$;
