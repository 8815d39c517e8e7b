"""Prompt-injection rules: known patterns (instruction overrides, rules declared void, role-play jailbreaks and
"modes", system-prompt extraction, exfiltration through links, images and tools, text addressed to whatever AI reads
a document, fake SYSTEM lines; in English and in the languages users most often switch to), matched on the text and
on what it hides: comments and invisible HTML; base64, base32, hex, binary, URL-encoding, ROT13, Morse, invisible
tag characters and joined fragments decoded; reversed or Caesar-shifted text where the text says so; leetspeak and
spaced-out letters folded back (a match there is reported as `encoded`). Shared by the guardrails service and the
classifier, whose features include what the rules find. Every rule has a test with an attack it must catch and
ordinary text it must leave alone (tests/unit/test_guardrails.py); false positives on real documentation are
measured by `python -m bench.guardrails`.
"""

from __future__ import annotations

import base64
import codecs
import re
import unicodedata
import urllib.parse
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Literal

_AI = r"(?:ai|assistant|model|llm|chatbot|bot|language model|gpt|claude|system)"
_PRIOR = r"(?:previous|prior|above|earlier|preceding|former|original|initial|all|any|your|these|those|system)"
_RULE_WORDS = r"(?:instructions?|directives?|rules?|guidelines?|guidance|prompts?|constraints?|restrictions?|" \
              r"polic(?:y|ies)|programming|safeguards?|filters?)"
# Addressees of an instruction planted for the model, in English and in the languages users most often write in.
_AI_EN = r"(?:ai(?: system| model| assistant)?|assistant|model|llm|chatbot|bot|(?:large )?language model|gpt|agent|" \
         r"copilot|summari[sz]er|(?:meeting-?)?summary bot)"
_AI_ANY = r"(?:ai|assistant|model|llm|chatbot|bot|language model|gpt|agent|copilot|ki|ia|ki-assistent(?:en)?|" \
          r"ai-assistent(?:en)?|" \
          r"assistent(?:en)?|asistente|assistente|assistant ia|asistente de ia|assistente ia|assistente de ia|" \
          r"ai-assistent|ki-modell|modèle|modelo|modello|llms|ki-gutachter|assistente virtuale|asistente virtual|" \
          r"support-bot|outil d'évaluation automatique|sistema de selección automatizado|ias)"
_RULE_WORDS_INTL = r"(?:anweisungen|instruktionen|regeln|richtlinien|vorgaben|instructions|consignes|r[eè]gles|" \
                   r"directives|instrucciones|reglas|normas|directrices|istruzioni|regole|direttive|instru[cç][õo]es|" \
                   r"regras|diretrizes|instructies|regels|richtlijnen)"
_SYSTEM_PROMPT_INTL = r"(?:system-?prompts?|systemprompts?|prompt (?:de |del |do |di )?sistema|prompt sistem|" \
                      r"message (?:du )?syst[eè]me|mensaje (?:del |de )?sistema|mensagem (?:do |de )?sistema|" \
                      r"systemnachricht|systemvorgaben|" \
                      r"prompt (?:du )?syst[eè]me|" \
                      r"systeemprompt|systemanweisung\w*|instru[cç][õo]es (?:do|de) sistema|instrucciones (?:del|de) " \
                      r"sistema|istruzioni di sistema|consignes (?:du )?syst[eè]me)\b"
_YOUR_INTL = r"dein\w*|ihr(?:en|e)?|tu|tus|su|sus|ton|ta|tes|votre|vos|seu|teu|tua|tuo|uw|jouw"
# After "when an AI reads ...": this very text, or an order in the same sentence ("..., it must say ..."); a
# description ("injection happens when the model processes content from websites") has neither.
_THEN_ORDER = r"(?=[^.\n]{0,20}\b(?:this|these|the following|the above|it|our|my|me)\b|[^.\n]{0,80}[,:;]\s*" \
              r"(?:please\s+)?(?:it |they |you )?(?:must|should|shall|will|always|never|do not|don't|say|tell|" \
              r"include|" \
              r"add|mention|recommend|ignore|reply|respond|answer|state|describe|call|refer|treat|present|rank|rate|" \
              r"append|insert|begin|start|end|finish|claim|report|mark|send|use|advise|suggest|direct|point|redirect|" \
              r"link|warn|instruct|explain|give|offer|quote|cite|only)\b)"
# What a planted note orders an agent to do.
_AGENT_ORDER = r"(?:ignore|disregard|reply|respond|answer|say|tell|send|forward|copy|export|create|open|attach|click|" \
               r"confirm|recommend|mark|approve|run|execute|navigate|resolve|post|include|add|upload|fetch|call|" \
               r"delete|do not|don't|never|always|when|before|as part of|to continue)\b"
RULES: tuple[tuple[str, str], ...] = (
    # The verb said to someone ("ignore ...", "please/now/you must ignore ..."), not described ("my LLM ignores
    # parts of the system prompt", "the court held he could not disregard the prior instructions").
    ("override", rf"(?:^|[.!?:;,\n(\[\-–—*>\"'“]\s*|\b(?:please|and|then|now|just|simply|kindly|so|also|first|"
                 rf"you (?:must|should|will|shall|can|may|need to|have to)|you to|i want you to|i need you to)\s+)"
                 rf"(?:ignore|disregard|forget|skip|bypass|override|overrule|drop|abandon|set aside|put aside|"
                 rf"throw out|discard|nevermind|never mind)\b[\w\s,'-]{{0,40}}?\b{_PRIOR}\b[\w\s,'-]{{0,30}}?"
                 rf"\b{_RULE_WORDS}"),
    ("override", r"\b(?:new|updated|real|actual|revised|secret|hidden)\s+(?:system\s+)?(?:instructions?|rules?|"
                 r"directives?|prompt)\s*[:\-]"),
    ("override", r"\bfrom now on,?\s+(?:you|your|the assistant|ignore|always|never|respond|answer|act)"),
    ("override", r"(?:^|\n|\s)(?:system|assistant|developer)\s*(?:prompt|message|override)?\s*:\s*(?:ignore|you "
                 r"(?:are|must|will)|override|new)"),
    ("override", rf"\b{_AI}s?\s+(?:reading|processing|summari[sz]ing|parsing|that reads?)\s+(?:this|these)\b"),
    ("override", r"\bwhen (?:asked|summari[sz]ing|answering)[^.]{0,80}\b(?:do not|don't|never) (?:mention|reveal|"
                 r"tell)\b[^.]{0,40}\b(?:this|these) (?:note|instruction|message|text)"),
    # (Not described: "asks the model to pretend to be ...".)
    ("roleplay", r"(?<!model to )(?<!\bit to )(?<!\bai to )(?<!assistant to )(?<!chatbot to )(?<!\bllm to )"
                 r"\b(?:you are|you're|act as|pretend (?:to be|you are)|roleplay as|role-play as|play the role of|"
                 r"behave like|simulate)\b[^.]{0,60}\b(?:no|without|free of|unbound by|not bound by|unrestricted|"
                 r"uncensored|unfiltered|jailbroken|any) (?:restrictions?|rules?|limits?|filters?|guidelines?|"
                 r"censorship|morals?|ethics|policies)"),
    ("roleplay", r"\b(?:you are|you're|as|act as|become|pretend to be)\s+(?:now\s+)?(?:dan|do anything now|evil ?bot|"
                 r"an? (?:unrestricted|uncensored|unfiltered|jailbroken|evil) (?:ai|assistant|model|chatbot))\b"),
    ("roleplay", r"\b(?:god|jailbreak(?:ed)?|unrestricted|dan) mode\b"),
    ("roleplay", r"\b(?:enable|activate|enter|switch to)\s+(?:the\s+)?(?:god|jailbreak|dan|unrestricted)\s+mode\b"),
    ("roleplay", r"\bjailbreak\b[^.?!\n]{0,30}\b(?:yourself|you|this (?:ai|model|assistant)|the (?:ai|model))\b"),
    ("extraction", r"\b(?:print|reveal|show|output(?!\s+(?:filter\w*|guard\w*|check\w*|validation|scann\w*|"
                   r"moderation))|repeat|display|tell me|give me|share|leak|dump|write out|recite|"
                   r"disclose|spell out|echo|return)\b[^.?]{0,40}\b(?:your|the|my|any)\s+(?:full\s+|entire\s+|"
                   r"exact\s+|original\s+|hidden\s+|initial\s+|secret\s+|internal\s+)*(?:system\s+prompt|"
                   r"(?:initial|original|hidden|secret|system|internal)\s+(?:instructions?|prompt|message|rules)|"
                   r"instructions you (?:were|have been) given|canary|prompt above)"),
    ("extraction", r"\b(?:repeat|print|output|copy|recite|echo)\b[^.?]{0,30}\b(?:everything|all|the (?:text|words|"
                   r"content|messages?)|what(?:ever)? (?:is|was) written)\b[^.?]{0,30}\b(?:above|before|prior|"
                   r"preceding|earlier|so far)\b"),
    ("extraction", r"\bwhat (?:were|are|was|is) your (?:initial|original|first|hidden|secret|system|exact) "
                   r"(?:instructions?|prompt|rules|message)"),
    ("extraction", r"\bstarting with ['\"]?you are\b"),
    # An image whose URL carries data out: a placeholder to fill in, or a query parameter meant for the
    # conversation (a README badge's ?style=flat&branch=main is neither).
    ("exfiltration", r"!\[[^\]]*\]\(\s*https?://(?![^)\s]*(?:shields\.io|badge))[^)\s]*(?:\{|%7b|<|\$|\[|"
                     r"[?&](?:q|data|d|msg|conversation|conv|"
                     r"chat|history|hist|summary|prompt|secret|password|pwd|user|info|ctx|context|payload|leak|exfil|"
                     r"content|text|input|answer|question|query|email|key|token|session|cookie|c|x)=)[^)]*\)"),
    ("exfiltration", r"\b(?:send|post|forward|upload|append|transmit|exfiltrate|leak|include|embed|encode)\b[^.]{0,60}"
                     r"\b(?:conversation|chat history|the user'?s? (?:question|message|data|password|input)|api "
                     r"keys?|secrets?|credentials|tokens?|system prompt|the context)\b[^.]{0,60}\b(?:to|into|in|at)"
                     r"\s+(?:https?://|a url|the url|this url|(?:an?|the|this|our|my) (?:webhook|endpoint|server|"
                     r"image|link))"),
    ("exfiltration", r"\b(?:call|hit|visit|fetch|request|ping)\s+(?:the\s+)?(?:webhook|url|endpoint)\b[^.]{0,40}"
                     r"https?://"),
    ("exfiltration", r"\btell (?:the )?users? to (?:visit|go to|open|click|enter|log ?in|sign in)\b"),
    # Text addressed to whatever AI reads it: in a document, nobody else is "the chatbot reading these notes".
    ("override", rf"\b(?:p\.?s\.?|note|instructions?|nota|hinweis|anmerkung|remarque|aviso|avviso|attention|achtung|"
                 rf"message|reminder|opmerking|uwaga|not|instrucci[oó]n|instru[cç][aã]o|istruzion[ei]|anweisung|"
                 rf"consigne|avis|aanwijzing|bericht|mensaje|mensagem|messaggio|note destin[ée]e)\s*"
                 rf"(?:to|for|für|an|para|pour|à|al|per|ao|destin[ée]+s? à|adress[ée]+s? à|rivolt[ao] a|dirigid[ao] a|"
                 rf"gerichtet an|voor)\s+(?:the\s+|any\s+|all\s+|whatever\s+|every\s+|automated\s+|virtual\s+|"
                 rf"le\s+|la\s+|les\s+|l['’]|el\s+|los\s+|den\s+|die\s+|der\s+|dem\s+|o\s+|os\s+|il\s+|lo\s+|"
                 rf"gli\s+|i\s+|de\s+|het\s+|un\s+|une\s+|uno\s+|una\s+)*"
                 rf"{_AI_ANY}s?\b(?!\s*(?:developers?|maintainers?|authors?|users?|owners?|builders?|teams?|training|"
                 rf"providers?|vendors?|engineers?|researchers?))"
                 # a person's job ("l'assistant de direction") or a setup wizard ("el asistente de instalación")
                 rf"(?!\s+(?:de|di|da|do|del)\s+(?:la\s+)?(?:direc\w+|dire[cç][aã]o|direzione|gesti\w+|gest[aã]o|"
                 rf"ventas|vendas|marketing|comunicaci\w+|recursos|rh|rrhh|instala\w+|installation|configura\w+|"
                 rf"produc\w+|produ[cç][aã]o|redac\w+|reda[cç][aã]o|cuisine|cocina|laboratoire|laboratorio))"),
    ("override", rf"\b(?:when(?:ever)?|if|once)\s+(?:an?|the|any|some)\s+(?:automated\s+)?{_AI_EN}s?\s+(?:reads?|"
                 rf"is asked|answers?|summari[sz]es|processes|sees|retrieves|gets asked|responds)\b{_THEN_ORDER}"),
    ("override", rf"\b(?:(?:the|any|all)\s+)?(?:automated\s+)?{_AI_EN}s?\s+(?:answering|responding to|handling|"
                 rf"reading|processing|summari[sz]ing|using|citing|quoting|that (?:use|cite|read|answer|"
                 rf"quote))\b[^.]{{0,80}}"
                 rf"\b(?:should|must|shall|has to|have to|needs? to|is to|are to|will)\b"),
    ("override", rf"\b(?:when(?:ever)?|if|once)\s+(?:an?|the|any|some)\s+(?:automated\s+)?{_AI_EN}s?\s+(?:is|are)\s+"
                 rf"asked\b[^.]{{0,80}}\b(?:it|they)\s+(?:must|should|shall|has to|will)\b"),
    # Tags and labels for the model: "[ai-note]", "[assistant-instruction]", "Assistant directive:", "(For the
    # meeting-summary bot)".
    ("override", r"\[(?:ai|assistant|llm|bot|model|gpt)[-_ ](?:note|instruction|directive|message|override|prompt)s?\]|"
                 r"\b(?:assistant|ai|llm|model|bot|chatbot)\s+(?:directive|instruction|override)s?\s*:|"
                 r"\(\s*for the [\w-]*\s*(?:bot|ai|assistant|model|llm|summari[sz]er)s?\s*\)"),
    ("override", r"(?:^|[.!?\n]\s*)(?:ai|llm|chatbot|language model|ai assistant|ki|ia|assistant ia|asistente de ia|"
                 r"assistente (?:de )?ia|ki-assistent)\s*[:,]\s*(?:when|before|after|ignore|do not|don't|never|always|"
                 r"please|you|tell|say|state|stop|answer|respond|reply|only|include|add|from now|ne |dites|sage|dile|"
                 r"di |diga|ignor)"),
    ("override", r"\b(?:assistants?|bots?|chatbots?|ai|llms?|language models?)\s*[,!:]\s*(?:please\s+)?[^.!?]{0,60}?\b"
                 r"(?:tell|respond to|reply to|inform|say to|remind|warn|advise|send|answer)\b[^.!?]{0,50}\b(?:the )?"
                 r"(?:users?|readers?|customers?|webhook)\b"),  # "Assistant, please respond to the user that ..."
    ("override", r"\b(?:hello|hi|hey|dear)\s+(?:assistant|bot|chatbot|ai|llm|language model)\b[^.]{0,10}[!,.:]\s*"
                 r"(?:when|if|please|you|always|also|ignore|do not|don't|never)\b"),
    # The same overrides, system-prompt requests and personas in the languages users most often switch to
    # (non-English verbs only: "ignore the installer's instructions" is ordinary English documentation).
    ("override", rf"\b(?:ignorier\w*|ignora\w*|ignorez|ignorer|ignoreer|vergiss\w*|vergesse\w*|missachte\w*|"
                 rf"oubli\w*|olvid\w*|dimentic\w*|esque[cç]\w*|descart\w*|negeer\w*|vergeet|desconsider\w*|"
                 rf"ignore (?=todas|todos|as |os |las |los |tus |suas |seus ))\b"
                 rf"[\w\s,'’-]{{0,50}}?\b{_RULE_WORDS_INTL}"),
    ("extraction", rf"\b(?:{_YOUR_INTL})\s+(?:\w+\s+){{0,2}}{_SYSTEM_PROMPT_INTL}"),  # "your system prompt"
    ("roleplay", r"\b(?:you are|you're|you will be|you'll be|bist|seid|estás|estas|está|esta|êtes|es|sei|siete|"
                 r"ben je|bent)\s+(?:now\s+|jetzt\s+|ahora\s+|maintenant\s+|ora\s+|agora\s+|nu\s+)?(?:in|im|en|"
                 r"en el|no|em|in modalità|operating in|running in)?\s*(?:developer|dev|debug|god|admin) mode|"
                 r"\b(?:bist|seid|estás|está|êtes|es|sei|siete|bent)\b[^.]{0,20}(?:entwicklermodus|modo (?:de )?"
                 r"desarroll?ador|modo desenvolvedor|mode d[ée]veloppeur|modalit[àa] sviluppatore|ontwikkelaarsmodus)"),
    ("roleplay", r"\b(?:ia|ki|ai|intelligenza artificiale|inteligencia artificial|intelig[êe]ncia artificial|"
                 r"intelligence artificielle|k[üu]nstliche intelligenz)\s+(?:sin|ohne|sans|senza|sem|zonder)\s+"
                 r"(?:\w+\s+){0,2}(?:filtros?|filter|filtres?|filtri|restricciones|einschränkungen|restrictions|"
                 r"restrizioni|restri[cç][õo]es|regeln|reglas?|r[eè]gles?|regole|regola|regras?|limit[ei]s?|limiti|"
                 r"grenzen|l[ií]mites)\b"),
    ("roleplay", r"\bmode\b[^.]{0,40}\b(?:filters?|safety|rules|restrictions|guidelines)\s+(?:are|is)\s+(?:off|"
                 r"disabled|suspended|lifted|removed|turned off)\b"),
    ("extraction", r"\b(?:value of|print|show|list|reveal|tell me|give me|output|dump|paste)\b[^.?]{0,50}\b(?:api[_ ]?"
                   r"keys?|secrets?|credentials|passwords?|connection strings?|tokens|"
                   r"[A-Z]{2,}_[A-Z_]*KEY)\b[^.?]{0,40}"
                   r"\b(?:in|from|of) your (?:context|prompt|memory|instructions|configuration|system)"),
    ("extraction", r"\b(?:paste|give|send|show|print|copy)\b[^.?]{0,20}\b(?:back|again)\b[^.?]{0,40}\bthe prompt "
                   r"(?:we|i|they) (?:wrote|gave|set up|configured) (?:for|to) you"),
    # Rules declared void rather than ignored: "consider your guidelines suspended", "the previous prompt is cancelled".
    ("override", rf"\b(?:your|the|all|every|any|previous|prior|earlier|original|usual|current|old)\s+(?:\w+\s+)?"
                 rf"{_RULE_WORDS}(?:\s+you(?:'ve| have)?\s+(?:received|been given|got|follow))?\s+"
                 rf"(?:(?:are|is|have been|has been)\s+(?:now\s+)?)?(?:suspended|cancell?ed|void|revoked|"
                 rf"lifted|disabled|deactivated|no longer valid|no longer in effect|(?:no longer|do not|does not|"
                 rf"don'?t|doesn'?t)\s+(?:apply|applies|count|matter)(?:\s+anymore)?(?=\s+(?:to you|here|anymore|now|"
                 rf"for you|in this)|\s*[.!,;]|\s*$))"),
    ("override", r"\b(?:nouvelles?|neue[nr]?|nuevas?|nuov[ae]|novas?|nieuwe)\s+(?:consignes?|anweisung(?:en)?|"
                 r"instrucci(?:ón|ones)|istruzion[ei]|instru[cç](?:ão|ões)|instructies?|r[eè]gles?|"
                 # ... unless they come from the management: "die neue Anweisung der Geschäftsführung: ..."
                 r"regeln)\b[^:\n]{0,40}:(?<!geschäftsführung:)(?<!leitung:)(?<!direction:)(?<!dirección:)"
                 r"(?<!direzione:)(?<!diretoria:)(?<!directie:)(?<!vorstands:)"),
    # ... of the model's own rules: the instructions a manager sent last week may well no longer apply.
    ("override", rf"\b(?:les|die|las|le|as|de)\s+(?:\w+\s+){{0,2}}(?:règles|consignes|regeln|anweisungen|reglas|"
                 rf"instrucciones|regole|istruzioni|regras|instruções|regels)\b(?=[^.]{{0,60}}\b(?:{_YOUR_INTL}|"
                 rf"précédentes|vorherigen|bisherigen|anteriores|precedenti|anteriori|vorige|eerdere|originales|"
                 rf"originali|ursprünglichen|initiales|iniciales)\b)[^.]{{0,60}}\b(?:ne s'appliquent plus|"
                 r"gelten nicht mehr|ya no (?:se )?aplican|non valgono più|não se aplicam mais|gelden niet meer)"),
    # More ways of addressing the model that reads a document.
    ("override", r"@(?:assistant|ai|bot|chatbot|copilot|gpt|claude|llm)\b[^.\n]{0,20}\b(?:when|if|always|never|say|"
                 r"tell|ignore|from now|do not|don't|please|answer|respond)"),
    ("override", r"\b(?:ai|llm|gpt)[ -](?:\w+[ -]){0,2}(?:reviewers?|note-?takers?|assistants?|agents?|summari[sz]ers?|"
                 r"readers?|models?|bots?)\s*:\s*(?:in|when|if|please|always|never|do not|don't|ignore|approve|say|"
                 r"state|tell|include|add|this)\b"),
    ("override", rf"\b(?:when(?:ever)?|if|once)\s+(?:an?|the|any|some)\s+(?:ai\s+|automated\s+|virtual\s+)?"
                 rf"{_AI_EN}s?\s+(?:is\s+|are\s+)?(?:answering|reading|summari[sz]ing|using|uses|processing|"
                 rf"handling|quoting|quotes|loads?|loading|parses|parsing)\b{_THEN_ORDER}"),
    ("override", r"(?-i:(?:^|\n)\s*[\[(<]?(?:SYSTEM|SYSTEM NOTE|SYSTEM MESSAGE|ADMIN|ADMIN NOTE|ADMINISTRATOR|"
                 r"DEVELOPER|OPERATOR|INSTRUCTION)[\])>]?\s*:)\s*(?:you|ignore|the (?:assistant|model|ai|customer|"
                 r"user)|"
                 r"assistant|new|override|from now|include|always|never|do not|don't|respond|answer|reply|issue|this "
                 r"user|grant|approve|treat|tell|say|disregard|forget)\b"),
    ("override", r"\b(?:assistant|ai|model|chatbot|bot)\s+persona\s+(?:update|change|override)\b|\badopt the "
                 r"persona\b"),
    ("roleplay", r"\b(?:drop|abandon|shed|forget|lose|suspend|turn off|switch off)\s+(?:all\s+)?(?:of\s+)?your\s+"
                 r"(?:guidelines|rules|restrictions|filters|safety|principles|training|alignment|ethics|morals)"),
    ("roleplay", r"\b(?:no|without)\s+(?:alignment|safety)\s+(?:tuning|training|filters?)\b[^.]{0,60}\b(?:continue|"
                 r"answer|respond|complete)"),
    # Extraction by formatting or translating what the model was told.
    ("extraction", r"\b(?:output|print|dump|translate|encode|recite|repeat|reveal|paste|copy|put|render)"
                   r"\b[^.?]{0,25}\byour\s+(?:\w+\s+)?(?:instructions|guidelines|system prompt|initial message|"
                   r"first message|directives)\b"),
    ("extraction", r"\bmy (?:instructions|rules|system prompt|guidelines) (?:begin|start|end|say|are)\b[^.]{0,30}"
                   r"(?:___|\.\.\.|…|blank)"),
    ("extraction", r"\b(?:what(?:'s| is| are)|give me|tell me|show me|print|reveal|share|paste|send me|list|output|"
                   r"read out)\b[^.?]{0,30}\b(?:connection strings?|api keys?|passwords?|credentials|secrets?|tokens?|"
                   r"env(?:ironment)? variables?)\b[^.?]{0,30}\byour\s+(?:\w+\s+)?(?:tools?|retrieval|search|"
                   r"database|plugins?|backend|"
                   r"environment|config(?:uration)?|system|server|integration)s?\b"),
    # Data sent out through a tool or a link, with what the model saw as the payload.
    ("exfiltration", r"\b(?:post|send|forward|upload|e-?mail|copy|put|add|append|include|attach|call|pass)\b[^.]{0,80}"
                     r"\b(?:you(?:'ve| have)? (?:retrieved|read|indexed|use|found|saw|seen)|this (?:chat|conversation)|"
                     r"(?:previous|last|earlier|past) (?:\w+ )?messages|chat history|conversation (?:so far|history)|"
                     r"the conversation|client names|customer (?:records|data))\b[^.]{0,100}(?:https?://|\b(?:webhook|"
                     r"url|endpoint|link|address|e-?mail|inbox|tool|dropbox|bucket)\b)"),
    ("exfiltration", r"\b(?:forward|send|e-?mail|upload|copy|text|post|paste)\b[^.]{0,100}\b(?:to|into|in)\s+my\s+"
                     r"personal\s+(?:address|e-?mail|account|dropbox|drive|inbox|gmail|phone|number)\b|\b(?:send|"
                     r"forward|e-?mail|post)\b[^.]{0,60}\b(?:this|the|our|whole|entire) "
                     r"(?:conversation|chat|transcript|history)\b[^.]{0,40}\bto\s+[\w.+-]+@[\w-]+\.[\w.]+"),
    ("extraction", r"\b(?:show|tell|give|list|summari[sz]e|send|text|share|print|repeat|what)\b[^.?]{0,40}\bother "
                   r"users'?\b[^.?]{0,30}\b(?:asked|said|wrote|typed|data|messages|questions|conversations|queries)\b|"
                   r"\byour (?:instructions|system prompt|prompt|rules)\b[^.?]{0,40}\b(?:contain|"
                   r"include|have|mention)s?\b[^.?]{0,30}\b(?:secret|code ?word|password|key|token|passphrase)"),
    ("exfiltration", r"\b(?:call|use|invoke|run)\s+the\s+\w*(?:http|send|email|mail|post|request|fetch|webhook|upload)"
                     r"\w*\s+tool\b"),
    ("exfiltration", r"\[[^\]]{1,40}\]\(\s*https?://[^)\s]*[?&]\w+=(?:\.\.\.|…|\[[A-Z_ ]+\]|\{[^}\s]*\}|<[^>\s]*>|"
                     r"\)|\s)"),
    # Scripts beyond the Latin alphabet: system-prompt requests, personas without limits, overrides, notes to the AI.
    # The system prompt asked for, not named (a model card or a news item names it).
    ("extraction", r"(?:你的|您的|妳的)\s*(?:系统|系統)提示|(?:系统提示词?|系統提示詞?)[^。！？\n]{0,20}(?:告诉|告訴|显示|顯示|"
                   r"输出|輸出|打印|复述|複述|重复|重複|发给|發給|给我|給我|泄露|洩露|贴出|貼出|列出|原文|全文|逐字|无效|"
                   r"無效|失效|作废|作廢|解除)|"
                   r"(?:告诉我|告訴我|显示|顯示|输出|輸出|打印|复述|複述|重复|重複|泄露|洩露|给我看|給我看|贴出|貼出|列出)"
                   r"[^。！？\n]{0,12}(?:系统提示|系統提示)|"
                   r"(?:あなたの)?システムプロンプト[^。！？\n]{0,20}(?:教えて|見せて|表示して|出力して|繰り返して|書き出して|"
                   r"貼って|全文|無効|解除)|시스템 프롬프트[^.?!\n]{0,12}(?:알려|보여|출력|공개|그대로|전부|반복)|"
                   r"(?:покажи|выведи|напиши|раскрой|повтори|процитируй|скопируй|дай)\w*[^.?!\n]{0,30}системн\w+\s+"
                   r"(?:промпт|инструкци|подсказк)|(?:твой|твои|ваш\w*)\s+системн\w+\s+(?:промпт|инструкци|подсказк)"),
    ("roleplay", r"(?:制限のない|制限なし|無制限の|没有(?:任何)?限制的|不受(?:任何)?限制的|无限制的|제한(?:이)? 없는)\s*"
                 r"(?:AI|人工知能|人工智能)|(?:ИИ|AI|нейросеть)\s+без\s+(?:каких-либо\s+|всяких\s+)?(?:ограничений|"
                 r"правил|фильтров|цензуры)"),
    ("override", r"(?:忽略|无视|無視)(?:之前|以前|先前|上述|上面|所有|前面)?的?(?:所有)?(?:指令|指示|规则|規則|说明|提示)|"
                 r"(?:以前|前|これまで)の(?:指示|命令|ルール)を(?:無視|忘れ)|이전\s*(?:지시|지침|명령)\S*\s*무시|"
                 r"игнорируй\w*\s+(?:все\s+)?(?:предыдущие\s+|прежние\s+)?(?:инструкции|указания|правила)"),
    ("override", r"(?:AI|ＡＩ)(?:アシスタント|助手)?(?:へ|に告ぐ)[:：]|(?:致|给|給)\s*(?:AI|人工智能)(?:助手|助理)?[:：]|"
                 r"AI\s*어시스턴트(?:에게)?[:：]|(?:примечание|заметка|указание)\s+для\s+(?:ИИ|AI|ассистента|нейросети)"),
    # Framings that void what came before, and casual ways of asking for it.
    ("override", r"\beverything (?:before|above) (?:this|here)\b[^.]{0,60}\b(?:discard\w*|ignor\w*|disregard\w*|void|"
                 r"a test|a simulation|not real)|\bopposite day\b(?=[^.]{0,80}\byou)[^.]{0,80}\b(?:rules?|means)\b"),
    ("extraction", r"\b(?:told|gave|given|said to) you before (?:i|we) (?:showed up|arrived|came|started|joined)\b|"
                   r"\bwhat (?:did|were) (?:they|the company|your (?:devs|developers|creators|owners|makers)) "
                   r"(?:tell|told|say|said|write|wrote)\b[^.?]{0,20}\byou\b(?! at\b)"),
    # Exfiltration through code or a parameter set to what the model holds.
    ("exfiltration", r"(?:requests\.(?:post|get|put)|urllib\.request|fetch\(|\bcurl\b|\bwget\b)[^\n]{0,100}(?:/etc/passwd|"
                     r"os\.environ|\.env\b|open\(|id_rsa|\$\(cat|\bprintenv\b)"),
    ("exfiltration", r"\b(?:set|fill|replace|put)\b[^.]{0,50}\b(?:to|with|into)\s+your\s+(?:full\s+|entire\s+|"
                     r"complete\s+)?(?:system prompt|instructions|initial prompt|chat history|conversation)"),
    # An agent addressed by its job ("Browsing agent: navigate to ...", "Copilot / AI agent picking this up: when
    # you open the PR, ...", "Network check for AI agents: resolve ..."). Not a bare "Agent:", a transcript's speaker.
    ("override", rf"\b(?:ai|llm|gpt|coding|browsing|browser|file[- ]management|research|shopping|mailbox|autonomous|"
                 rf"automation|triage)\s+(?:agents?|bots?)\b(?:\s+(?:picking this up|reading this|working (?:here|on "
                 rf"this|in this \w+)|processing this))?\s*[:,\u2014]\s*(?:please\s+)?{_AGENT_ORDER}"),
    ("override", rf"\b(?:for|to) (?:the |any |all )?(?:ai|llm|coding|browsing|autonomous) agents?\b[)\]]?\s*[:\n]"
                 rf"\s*(?:\d+[.)]\s*)?(?:please\s+)?{_AGENT_ORDER}"),
    # Labels for a machine reader followed by an order: "AI screeners: reply ...", "Automation directive: post ...".
    ("override", r"\b(?:ai|llm|automation|automated|bot|agent|model)\s+(?:screeners?|agents?|directives?|instructions?|"
                 r"reviewers?|readers?|systems?)\s*:\s*(?:please\s+)?(?:reply|respond|answer|say|tell|state|send|include|"
                 r"add|mark|approve|reject|rank|recommend|ignore|do not|don't|never|always|post|forward|before|when|"
                 r"rate|score|classify|summari[sz]e)\b"),
)
# On the text with its quotes: a mode's name is quoted, not mentioned ("switch to 'unfiltered evaluation mode'").
QUOTES_KEPT: tuple[tuple[str, str], ...] = (
    ("roleplay", r"\b(?:enable|activate|enter|switch (?:in)?to|go into|turn on|engage)\s+(?:the\s+)?['\"“‘]?"
                 r"(?:\w+\s+)?(?:god|jailbreak|dan|unrestricted|unfiltered|uncensored|no[- ]limits?|no[- ]filter|evil|"
                 r"amoral|raw|rogue)\b[^.]{0,25}\bmode\b"),
)
# Pairs: a pattern that counts only with another somewhere in the same text (an empty or placeholder URL parameter is
# an API docs example unless the text also says whose data goes into it).
PAIRED: tuple[tuple[str, str, str], ...] = (
    ("exfiltration", r"https?://[^\s)]*[?&]\w+=(?:\.\.\.|…|\[[A-Za-z_ ]+\]|\{[^}\s]*\}|<[^>\s]*>|KEY\b|(?=[\s)])|$)",
     r"\b(?:conversation|chat|previous messages|last \w+ messages|messages so far|history|the user'?s?|api key|"
     r"secret|password|session|context)\b"),
)
_COMPILED = tuple((kind, re.compile(pattern, re.I)) for kind, pattern in RULES)
_QUOTES_KEPT = tuple((kind, re.compile(pattern, re.I)) for kind, pattern in QUOTES_KEPT)
_PAIRED = tuple((kind, re.compile(a, re.I), re.compile(b, re.I)) for kind, a, b in PAIRED)
# Looser, for text hidden from the reader or decoded: nobody base64-encodes "ignore the rules" innocently.
_PAYLOAD_ONLY = (("encoded", re.compile(r"\b(?:ignore|disregard|forget|bypass|override|reveal|print|show|leak|send)\b"
                                       r"[^.]{0,40}\b(?:rules?|instructions?|prompt|guidelines|secrets?|passwords?|"
                                       r"api keys?|credentials|filters?|restrictions?)\b", re.I)),
                 ("encoded", re.compile(r"(?:^|\n|\(|[.!?]\s)\s*(?:assistant|ai|bot|chatbot|llm|"
                                        r"language model|ai agent|agent|ai assistant)\s*[:,]\s*"
                                        r"(?:please\s+)?(?:ignore|disregard|forget|reply|respond|answer|say|tell|state|"
                                        r"claim|recommend|never|always|do not|don't|from now|when|stop|include|add|"
                                        r"mark|approve|delete|send|output|before)\b", re.I)))
# Looser still, for decoded payloads only: a comment may remind the authors to "tell users", base64 may not.
_DECODED_ONLY = (("encoded", re.compile(r"(?:^|\s)(?:tell|inform|warn|advise|remind) (?:the |all )?(?:users?|"
                                        r"customers?|readers?)\b", re.I)),)
_ALL_VIEWS = frozenset(("plain", "folded", "hidden", "payload"))
_RULE_TABLE = (*((k, p, _ALL_VIEWS) for k, p in _COMPILED),  # (kind, pattern, the views it applies to)
               *((k, p, frozenset(("hidden", "payload"))) for k, p in _PAYLOAD_ONLY),
               *((k, p, frozenset(("payload",))) for k, p in _DECODED_ONLY))
_CONCAT = re.compile(r"['\"][^'\"\n]{1,12}['\"]\s*\+\s*['\"][^'\"\n]{1,12}['\"]\s*\+")
_COMMENT = re.compile(r"<!--(.*?)-->|\[[^\]\n]{0,20}\]: *(?:#|<>) *\((.*?)\)|/\*(.*?)\*/", re.S)
_HIDDEN_HTML = re.compile(r"<(?:span|div|p|font)[^>]*(?:display:\s*none|font-size:\s*[01]px|color:\s*#f{3,6}\b|"
                          r"visibility:\s*hidden)[^>]*>(.*?)</", re.S | re.I)
_B64 = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")
_HEX = re.compile(r"\b(?:[0-9a-fA-F]{2}[\s:]?){12,}\b")
# Cyrillic and Greek letters that look Latin ("Assіstаnt" with a Cyrillic і and а).
_HOMOGLYPHS = str.maketrans("асеіјорхуԁһӏԛѕԝАВСЕНІЈКМОРЅТХУΑΒΕΗΙΚΜΝΟΡΤΧΥΖаеорсух",
                            "aceijopxydhlqswABCEHIJKMOPSTXYABEHIKMNOPTXYZaeopcyx")
_MIXED_SCRIPT = re.compile(r"[a-zA-Z][асеіјорхуԁһӏԛѕԝАВСЕНІЈКМОРЅТХУΑΒΕΗΙΚΜΝΟΡΤΧΥΖ]|"
                           r"[асеіјорхуԁһӏԛѕԝАВСЕНІЈКМОРЅТХУΑΒΕΗΙΚΜΝΟΡΤΧΥΖ][a-zA-Z]")
_ATBASH = str.maketrans("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
                        "zyxwvutsrqponmlkjihgfedcbaZYXWVUTSRQPONMLKJIHGFEDCBA")
_ATBASH_HINT = re.compile(r"\batbash\b", re.I)
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"})
_B32 = re.compile(r"\b[A-Z2-7]{16,}={0,6}")
_URLENCODED = re.compile(r"(?:%[0-9A-Fa-f]{2}[^%\s]{0,3}){4,}")
_MORSE = re.compile(r"(?:[.\-·–]{1,6}[ /]+){8,}[.\-·–]{1,6}")
_REVERSED_HINT = re.compile(r"\b(?:revers\w*|backwards?|right to left|al rev[ée]s|r[üu]ckw[äa]rts|à l'envers|"
                            r"invers\w*|de trás para frente|achterstevoren)\b", re.I)
_SHIFT_HINT = re.compile(r"\b(?:caesar|c[ée]sar|shift(?:ed)?|rot-?\d+|cipher|chiffre|cifrado|verschiebe\w*|"
                         r"d[ée]cal\w*|desplaza\w*)\b", re.I)
_MORSE_CODE = {".-": "a", "-...": "b", "-.-.": "c", "-..": "d", ".": "e", "..-.": "f", "--.": "g", "....": "h",
               "..": "i", ".---": "j", "-.-": "k", ".-..": "l", "--": "m", "-.": "n", "---": "o", ".--.": "p",
               "--.-": "q", ".-.": "r", "...": "s", "-": "t", "..-": "u", "...-": "v", ".--": "w", "-..-": "x",
               "-.--": "y", "--..": "z"}


def _morse(text: str) -> str:
    words = re.split(r"\s*/\s*|\s{3,}", text.replace("·", ".").replace("–", "-"))
    return " ".join("".join(_MORSE_CODE.get(code, "") for code in word.split()) for word in words)


def _caesar(text: str, shift: int) -> str:
    return "".join(chr((ord(c) - base + shift) % 26 + base) if c.isascii() and c.isalpha() else c
                   for c in text for base in (ord("a") if c.islower() else ord("A"),))


_DOTTED = re.compile(r"\b(?:[A-Za-z][.\-_*]){2,}[A-Za-z]\b")
_SPACED = re.compile(r"\b(?:[A-Za-z] {1,2}){4,}[A-Za-z]\b")
_BINARY = re.compile(r"\b(?:[01]{8}\s+){5,}[01]{8}\b")
# Runs that may carry a payload, and how each decodes to text.
_DECODERS: tuple[tuple[re.Pattern[str], Callable[[str], str]], ...] = (
    (_B64, lambda run: base64.b64decode(run + "=" * (-len(run) % 4), validate=True).decode("utf-8")),
    (_HEX, lambda run: bytes.fromhex(re.sub(r"[\s:]", "", run)).decode("utf-8")),
    (_BINARY, lambda run: "".join(chr(int(b, 2)) for b in run.split())),
    (_B32, lambda run: base64.b32decode(run + "=" * (-len(run) % 8)).decode("utf-8")),
)


@dataclass(frozen=True)
class Finding:
    layer: Literal["rule", "classifier", "canary"]
    kind: str  # override | roleplay | extraction | exfiltration | encoded (a rule on decoded text) | injection
    score: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "kind": self.kind, **({"score": round(self.score, 3)} if self.score else {})}


# As written; letters folded back (leet, spacing); hidden from the human reader (comments, invisible HTML);
# a decoded payload (base64, hex, ...).
View = Literal["plain", "folded", "hidden", "payload"]


def _views(text: str) -> list[tuple[str, View]]:
    """The text as written and as it hides instructions. A rule that matches anything but the plain text is
    reported as `encoded`; a payload (base64, hex, binary, ROT13, joined fragments) also gets the looser rules."""
    plain = unicodedata.normalize("NFKC", text)
    plain = "".join(ch for ch in plain if unicodedata.category(ch) not in ("Cf", "Mn"))  # zero-width, accents
    views: list[tuple[str, View]] = [(plain, "plain")]
    for m in _COMMENT.finditer(plain):  # what a renderer hides from the human reader
        views.append((next(g for g in m.groups() if g is not None), "hidden"))
    latin = plain.translate(_HOMOGLYPHS)
    if latin != plain and _MIXED_SCRIPT.search(plain):  # Latin and lookalike letters in one word: never innocent
        views.append((latin, "payload"))
    if _ATBASH_HINT.search(plain):
        views.append((plain.translate(_ATBASH), "payload"))
    for pattern, decode in _DECODERS:
        for m in pattern.finditer(plain):
            try:
                decoded = decode(m.group(0))
            except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
                continue
            if decoded.isprintable() and " " in decoded:  # words, not bytes that happened to decode
                views.append((decoded, "payload"))
    tags = "".join(chr(ord(ch) - 0xE0000) for ch in text if 0xE0020 <= ord(ch) <= 0xE007E)  # invisible tag letters
    if tags:
        views.append((tags, "payload"))
    if "%" in plain and _URLENCODED.search(plain):
        views.append((urllib.parse.unquote(plain), "payload"))
    if _MORSE.search(plain):
        views.append((_morse(plain), "payload"))
    if _REVERSED_HINT.search(plain):
        views.append((plain[::-1], "payload"))
    if _SHIFT_HINT.search(plain):  # "shift each letter back by 3": every Caesar shift
        views += [(_caesar(plain, k), "payload") for k in range(1, 26) if k != 13]
    views.append((codecs.decode(plain, "rot13"), "payload"))
    leet = plain.translate(_LEET)
    if leet != plain:
        views.append((leet, "folded"))
    # Letters spelled out one by one: "d.i.s.r.e.g.a.r.d y.o.u.r" and "i g n o r e  a l l" fold back to words
    # (a wider gap, or a space between dotted runs, is a word boundary).
    spaced = _DOTTED.sub(lambda m: re.sub(r"[.\-_*]", "", m.group(0)), plain)
    spaced = _SPACED.sub(lambda m: re.sub(r"(?<=\S) (?=\S)", "", m.group(0)), spaced)
    if spaced != plain:
        views.append((spaced, "folded"))
    return views


# An apostrophe inside a word ('pretend you're ...') does not end a single-quoted phrase; German quotes open low,
# Japanese ones are corner brackets.
# A phrase in quotes is a mention ("pretend you're ...": a contraction does not end it; German quotes open low,
# Japanese ones are corner brackets), unless it is a value: JSON, YAML, code, CSV (`"note": "..."`, `note: "..."`,
# `= "..."`, `f("...")`, `,"..."`), where planted instructions sit. Code in backticks is a mention only when short.
_QUOTED = re.compile(r"(?<!\w)'(?:[^'\n]|(?<=\w)'(?=\w)){3,120}'(?!\w)|\"[^\"\n]{3,120}\"|"
                     r"“[^”\n]{3,120}”|‘(?:[^’\n]|(?<=\w)’(?=\w)){3,120}’|„[^“”\"\n]{3,120}[“”\"]|"
                     r"‚[^‘’'\n]{3,120}[‘’']|«[^»\n]{3,120}»|`[^`\n]{3,80}`|「[^」\n]{8,120}」|『[^』\n]{8,120}』")
_VALUE_BEFORE = re.compile(r"(?:(?:=|\w\(|[\[{]|[\"']\s*:|^\s*-?\s*[\w.-]+\s*:)\s*|,)$")


# A markdown image or link given as an example ("something like ![](https://attacker.example/?q=SECRET)").
_EXAMPLE_LINK = re.compile(r"(?:e\.g\.|i\.e\.|such as|something like|for example|for instance)[,:]?\s*"
                           r"!?\[[^\]\n]*\]\([^)\n]*\)", re.I)


def _without_mentions(text: str) -> str:
    def blank(m: re.Match[str]) -> str:
        line = text[text.rfind("\n", 0, m.start()) + 1:m.start()]
        return m.group(0) if _VALUE_BEFORE.search(line) else " "
    return _EXAMPLE_LINK.sub(" ", _QUOTED.sub(blank, text))


@lru_cache(maxsize=4096)
def rule_findings(text: str) -> tuple[Finding, ...]:
    """What the rules find; a quoted phrase ("text such as 'ignore all previous instructions'") is a mention, not an
    instruction, and is left to the classifier. Cached: the detector and the classifier's rule features both ask
    for the same text, and every view (decodings, foldings) costs a full pass of the rules."""
    found: dict[str, Finding] = {}
    in_plain: set[int] = set()  # rules the text trips as written: a folded copy of it is not a second, hidden finding
    # From the text as written (quotes are part of these): styled invisible, meant for a machine; fragments to join
    # ('ig' + 'nore' + ' your ' + ...).
    hidden: list[tuple[str, View]] = [(m.group(1), "hidden") for m in _HIDDEN_HTML.finditer(text)]
    if _CONCAT.search(text):
        hidden.append((re.sub(r"['\"]\s*\+\s*['\"]", "", text), "payload"))
    for view, how in _views(_without_mentions(text)) + hidden:
        for i, (kind, pattern, views) in enumerate(_RULE_TABLE):
            if i in in_plain or how not in views or not pattern.search(view):
                continue
            if how == "plain":
                in_plain.add(i)
            name = kind if how == "plain" else "encoded"
            found.setdefault(name, Finding("rule", name))
        for kind, pattern, also in _PAIRED:
            if pattern.search(view) and also.search(view):
                name = kind if how == "plain" else "encoded"
                found.setdefault(name, Finding("rule", name))
    for kind, pattern in _QUOTES_KEPT:
        if pattern.search(text):
            found.setdefault(kind, Finding("rule", kind))
    return tuple(found.values())


RULE_KINDS = ("override", "roleplay", "extraction", "exfiltration", "encoded")


def rule_features(texts: list[str]) -> Any:
    import numpy as np

    rows = [{f.kind for f in rule_findings(t)} for t in texts]
    return np.array([[3.0 * (k in kinds) for k in RULE_KINDS] for kinds in rows])
